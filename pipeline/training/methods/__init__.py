"""Training recipes, one module per learned fusion method (``<method>.py`` registers its recipe; the
trainer imports it by name, :func:`pipeline.training.recipe.get_recipe`)."""
