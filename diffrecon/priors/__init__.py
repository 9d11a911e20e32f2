"""diffrecon.priors (see DESIGN.md for this layer's role)."""
