"""diffrecon.classical (see DESIGN.md for this layer's role)."""
