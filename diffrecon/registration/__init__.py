"""diffrecon.registration (see DESIGN.md for this layer's role)."""
