"""Check episodes: `.venv/bin/python data/EpisodeStorage.py --validate PATH [PATH ...] [--trust_legacy_pickle] [--no_decode]`.

The guide's command, kept under its name. The episode format itself lives in the `data/episode/` package
(format, writer, reader, validate, legacy); this file only runs `data.episode.validate.main`.
"""

import sys

from data.episode.validate import main

if __name__ == "__main__":
    sys.exit(main())
