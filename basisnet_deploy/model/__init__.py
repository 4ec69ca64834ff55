"""Stage 1, the model: block tables, config, Keras layers and network, checkpoint, cost model.

``arch``, ``config``, ``cost`` and ``checkpoint.load_config`` are TensorFlow-free; ``layers``,
``network`` and loading weights need TensorFlow.
"""
