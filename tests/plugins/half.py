"""A method from a file, for tests/test_plugins.py: magnitude-prune to half the weights before megabatch 1."""

from almabench.methods import Method, register


@register
class Half(Method):
    name = "half"
    summary = "magnitude-prune to 0.5 before megabatch 1"
    prunes = True
    shrinks = True

    def target_density(self, step, config) -> float:
        return 0.5

    def before_step(self, ctx) -> None:
        if ctx.step == 1:
            ctx.prune({n: w.detach().abs() for n, w in ctx.masks.params.items()}, 0.5, within_current=True)
