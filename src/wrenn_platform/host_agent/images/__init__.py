"""Platform template images: recipes and the cached, layered builder (`wrenn template build`)."""

from wrenn_platform.host_agent.images.builder import (
    BuildResult,
    assemble_template,
    base_layer_dir,
    build_template,
    prune,
    template_hash,
)
from wrenn_platform.host_agent.images.debootstrap import BuildError
from wrenn_platform.host_agent.images.envd_layer import DEFAULT_ENVD_SOURCE, envd_hash
from wrenn_platform.host_agent.images.progress import Reporter, RichReporter, SilentReporter
from wrenn_platform.host_agent.images.recipe import MINIMAL, PLATFORM_RECIPES, BaseRecipe

__all__ = [
    "DEFAULT_ENVD_SOURCE",
    "MINIMAL",
    "PLATFORM_RECIPES",
    "BaseRecipe",
    "BuildError",
    "BuildResult",
    "Reporter",
    "RichReporter",
    "SilentReporter",
    "assemble_template",
    "base_layer_dir",
    "build_template",
    "envd_hash",
    "prune",
    "template_hash",
]
