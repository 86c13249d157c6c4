"""The catalogue: which components exist and how a recipe names them.

Loading the built-ins and installed plugins into registries (:mod:`~imtrans.catalogue.plugins`,
:mod:`~imtrans.catalogue.builtin`), reading and checking recipes against them
(:mod:`~imtrans.catalogue.recipe_loader`), building a recipe's trainer, networks and losses
(:mod:`~imtrans.catalogue.assembly`), and the generated component reference.
"""
