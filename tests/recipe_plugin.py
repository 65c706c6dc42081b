"""Recipes and models for the recipe tests: an AdamW + one-cycle + EMA recipe, and tiny models
that change the optimizer outside a recipe (each way the harness must refuse or record)."""

from __future__ import annotations

import gc

from tiny_plugin import build_tiny_cnn

from harness import ModelSpec, RecipeSpec, hookimpl


def make_adamw(param_groups, protocol):
    import torch

    return torch.optim.AdamW(param_groups, lr=protocol.lr_head, weight_decay=0.05)


def make_one_cycle(optimizer, protocol, steps_per_epoch):
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
                                               total_steps=protocol.epochs * steps_per_epoch)


def build_patching_sgd(num_classes: int, pretrained: bool):
    """Adds a weight decay to every SGD made from now on, by patching torch inside build."""
    import torch

    original = torch.optim.SGD.__init__

    def with_decay(self, params, *args, **kwargs):
        kwargs["weight_decay"] = 5e-4
        original(self, params, *args, **kwargs)

    torch.optim.SGD.__init__ = with_decay
    return build_tiny_cnn(num_classes, pretrained)


def build_changing_optimizer(num_classes: int, pretrained: bool):
    """A model whose forward, in training, finds the optimizer and gives it a weight decay."""
    import torch

    class ChangingOptimizer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = build_tiny_cnn(num_classes, pretrained)

        def forward(self, images):
            if self.training:
                for found in gc.get_objects():
                    if issubclass(type(found), torch.optim.Optimizer):
                        for group in found.param_groups:
                            group["weight_decay"] = 1e-3
            return self.net(images)

    return ChangingOptimizer()


@hookimpl
def register_recipes(register):
    register(RecipeSpec("adamw-onecycle-ema", make_adamw, make_one_cycle, ema_decay=0.9, version="1",
                        description="AdamW, one-cycle rates, EMA of weights"))
    register(RecipeSpec("adamw-onecycle", make_adamw, make_one_cycle, version="1",
                        description="AdamW, one-cycle rates, scored with the trained weights"))


@hookimpl
def register_models(register):
    register(ModelSpec(name="tiny-patching-sgd", build=build_patching_sgd, version="1", head_prefixes=("head",)))
    register(ModelSpec(name="tiny-changing-optimizer", build=build_changing_optimizer, version="1",
                       head_prefixes=("net.head",)))
