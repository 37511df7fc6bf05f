"""The `dataset` config group: images held as tensors on the training device, batched by index."""
