"""The physics of one lattice: units, the grid and its boundaries, kinetics, the sub-grid closure, receptors, vessels, the node's anatomy."""
