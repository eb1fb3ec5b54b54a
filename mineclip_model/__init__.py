"""MineCLIP `attn` (STEVE-1's goal embedding), re-implemented to load the original attn.pth.

Modules: mineclip (model, config, checkpoint I/O), image_encoder, temporal_encoder, text_encoder,
clip_transformer (shared block), tokenizer (offline CLIP BPE), embedding (fast per-frame
embeddings of videos, clips and texts).
"""
