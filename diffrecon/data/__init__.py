"""diffrecon.data (see DESIGN.md for this layer's role)."""
