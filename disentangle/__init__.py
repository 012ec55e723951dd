"""disentangle: neuron-level interpretability of vision models (library shared by every script)."""
