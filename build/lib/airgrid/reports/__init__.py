"""Reports from the SQL projection, in the seed's cadence: weekly per level-3 grid, monthly per
level-2 grid, quarterly per level-1 grid, and the yearly grid assessment (see ``compute``)."""
