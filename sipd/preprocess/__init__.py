"""Sensor preprocessing: raw products in, calibrated, geocoded, named-band COGs out.

- product_files: reading a product as delivered (folder, manifest or zip).
- sar_product: what every SAR reader gives the pipeline (bands, radiometry, GCPs).
- sentinel1, radarsat2, rcm: the readers, one per product family.
- speckle: multilook and speckle filters on intensity blocks.
- sar_pipeline: the block-streaming chain from DN to the output COG.
- catalog: the preprocessors a daemon offers, with their typed options.
"""
