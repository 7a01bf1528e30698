"""genesys-assets: PureConnect migration and a Genesys Cloud CX archive, as Dagster assets.

Every process that imports the package allocates Arrow memory with the C library's allocator, unless
``ARROW_DEFAULT_MEMORY_POOL`` says otherwise: Arrow's bundled mimalloc kept ~100 MiB more resident across the
flattening's threads (a 100k-conversation day peaked at ~500 MiB against ~395 MiB, the same CPU within this
machine's noise; a 1M day at 438 MiB against 479 MiB in the harness: benchmarks/README.md).
"""

import os

import pyarrow as pa

if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
    pa.set_memory_pool(pa.system_memory_pool())
