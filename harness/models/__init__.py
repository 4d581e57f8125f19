"""Models: building the BLIP-2-style stand-in from a config, and training the teacher."""
