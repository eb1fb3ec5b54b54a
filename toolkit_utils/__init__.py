"""Small helpers shared by the model, data and training packages."""
