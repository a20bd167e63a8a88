"""Ships the MONAI bundles inside the distribution.

Everything else is declared in ``setup.cfg``. The source of the bundles stays the top-level
``bundles/`` folder; a (non-editable) ``pip install .`` copies it to ``svseg/bundles/`` in the
installed package, where :func:`svseg.bundle.bundle_dir` finds it from any working folder.
"""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["svseg", "svseg.*"]), "svseg.bundles"],
    package_dir={"svseg.bundles": "bundles"},
    package_data={"svseg.bundles": ["*.json", "README.md", "*/configs/*.json", "*/configs/*.conf", "*/docs/*.md",
                                    "*/LICENSE"]},
)
