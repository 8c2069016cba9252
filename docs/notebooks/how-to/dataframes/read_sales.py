import pyarrow as pa

with open("sales.arrows", "rb") as f:
    table = pa.ipc.open_stream(f).read_all()
print(table.schema.to_string(show_schema_metadata=False))
print(table.to_pandas().dtypes)
