import nb2api


def test_exported_names_are_locked():
    public = {name for name in nb2api.__all__}
    assert public == {
        "LoadedNotebook", "NotebookError", "ParsedNotebook", "RouteSpec", "Settings",
        "__version__", "build_routes", "cancelled", "create_app", "load_notebook", "progress",
        "read_notebook",
    }
    for name in public:
        assert hasattr(nb2api, name)
