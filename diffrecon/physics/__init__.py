"""diffrecon.physics (see DESIGN.md for this layer's role)."""
