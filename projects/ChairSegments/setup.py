"""chairseg: the Chair Segments application (generator, study, measurement, browser demo) built
on semseg_heads. Installed editable by ``make setup`` (``pip install -e projects/ChairSegments``),
as Detectron2's larger projects are installed beside Detectron2."""

from setuptools import find_packages, setup

setup(
    name="chairseg",
    version="0.1.0",
    description="The Chair Segments application of semseg_heads: procedural data, the architecture "
    "study, benchmarks and the browser demo",
    python_requires=">=3.9",
    packages=find_packages(include=["chairseg", "chairseg.*"]),
    install_requires=["semseg_heads", "matplotlib", "tqdm"],
    extras_require={
        # Real photographs as generator backgrounds (skimage.data's sample images).
        "photos": ["scikit-image"],
        # The browser demo (FastAPI + uvicorn; python-multipart parses uploads) and its
        # Playwright test; the ONNX path is semseg_heads' own ``deploy`` extra.
        "serve": ["fastapi", "uvicorn", "python-multipart", "playwright"],
    },
)
