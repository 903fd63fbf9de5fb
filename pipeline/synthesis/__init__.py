"""The conditional pixel-space DDPM: model, objective, training and sampling (diffusers)."""
