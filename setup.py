"""semseg_heads: classic semantic-segmentation architectures for Detectron2."""

from setuptools import find_packages, setup

setup(
    name="semseg_heads",
    version="0.1.0",
    description="FCN, U-Net, DeconvNet and dilated context networks as Detectron2 components",
    python_requires=">=3.9",
    packages=find_packages(include=["semseg_heads", "semseg_heads.*"]),
    # torch/torchvision come pinned from requirements/torch.txt and detectron2 from
    # bootstrap/install_detectron2.py or an official build; listing them here only checks that
    # they are present, it never pulls another release.
    install_requires=[
        "torch",
        "torchvision",
        "detectron2",
        "fvcore",
        "pycocotools",
        "opencv-python-headless",
        "tqdm",
        "psutil",
    ],
    extras_require={
        "dev": ["pytest", "pytest-timeout", "ruff"],
        # ONNX export (torch's dynamo exporter needs onnxscript) and ONNX Runtime inference.
        # The Chair Segments application (generator, study, browser demo) is its own package,
        # projects/ChairSegments (``chairseg``), with its own extras.
        "deploy": ["onnx", "onnxscript", "onnxruntime"],
    },
)
