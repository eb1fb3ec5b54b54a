"""Rolling the agent out: the loop (episode), its records, prompts, the MineRL and replay environments, comparisons."""
