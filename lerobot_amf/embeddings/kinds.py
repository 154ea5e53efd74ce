"""The kernel's names and default sizes, in one torch-free place: ``--amf.selection.*`` validates
and defaults against them without importing model code, and a hand-built embedder gets the
sizes the amf strategy selects with."""

# gradient: expert-target loss gradient (self pseudo-target where no expert action exists);
# self_gradient: self pseudo-target everywhere; last_layer: the last layer's input features.
KINDS = ("gradient", "self_gradient", "last_layer")
TARGETS = ("expert", "self")
DEFAULT_TARGET = {"gradient": "expert", "self_gradient": "self", "last_layer": "self"}
# Projected dimension, (noise, timestep) draws per state, action-head weight layers differentiated.
DEFAULT_DIM, DEFAULT_DRAWS, DEFAULT_LAYERS = 1024, 4, 2
