"""The figure spec (figures.toml), installed as keras_fer_viz.figure_spec."""
