"""Export targets and int8 recipes, described as data (registry.py, recipes.py), and the
vocabulary every stage shares (kinds.py). Imports nothing above ``common``."""
