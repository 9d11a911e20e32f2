"""diffrecon.transforms (see DESIGN.md for this layer's role)."""
