"""Dense baseline: the network trained through the stream, never pruned."""

from .base import Method, register


@register
class Dense(Method):
    name = "dense"
    summary = "a dense network trained through the stream"
