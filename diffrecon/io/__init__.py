"""diffrecon.io (see DESIGN.md for this layer's role)."""
