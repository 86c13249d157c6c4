"""The official pix2pix / CycleGAN models: importing their checkpoints, and their catalogue.

- :mod:`imtrans.zoo.options`: the official ``train_opt.txt`` and what its options mean in a
  recipe.
- :mod:`imtrans.zoo.state_dicts`: reading an official ``.pth`` with ``weights_only`` and fitting
  its state dict to imtrans's networks.
- :mod:`imtrans.zoo.importer`: ``imtrans import``, official files to an imtrans run directory.
- :mod:`imtrans.zoo.catalog` and :mod:`imtrans.zoo.fetch`: the official pretrained models,
  ``imtrans models list`` and ``imtrans models download``.
"""
