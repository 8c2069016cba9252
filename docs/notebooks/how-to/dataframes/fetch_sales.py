import io
import os

import httpx
import pandas as pd
import pyarrow as pa

url = os.environ.get("API_URL", "http://localhost:8000") + "/sales"

r = httpx.post(url, headers={"Accept": "application/vnd.apache.arrow.stream"})
df = pa.ipc.open_stream(r.content).read_all().to_pandas()
print(df)

r = httpx.post(url, headers={"Accept": "application/vnd.apache.parquet"})
print(pd.read_parquet(io.BytesIO(r.content)).dtypes)
