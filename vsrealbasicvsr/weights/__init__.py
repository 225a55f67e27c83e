"""The networks' weights: the registry of models, their download and check, and loading a
checkpoint file into its network (MMEditing's, BasicSR's or bare layouts)."""
