"""optopass: simulate optical hardware on Hugging Face encoders through torch.fx graph passes."""
