"""Image facts shared by the data and filtering stages (perceptual hashes, decoding)."""
