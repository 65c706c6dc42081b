"""The built-in plugins: the paper's baseline components, registered through the same entry-point
group (``multilabel_bench``) as any third-party plugin."""
