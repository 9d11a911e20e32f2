"""diffrecon.methods (see DESIGN.md for this layer's role)."""
