"""The server extension app: settings, handlers, and stopping children on shutdown."""

from __future__ import annotations

import atexit

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float

from .handlers import handlers
from .manager import AppManager


class Nb2ApiExtension(ExtensionApp):
    """Serve notebooks as APIs from JupyterLab (``c.Nb2ApiExtension.<trait>`` configures)."""

    name = "nb2api"
    load_other_extensions = True

    startup_timeout = Float(
        120.0, config=True, help="Seconds a notebook may take to load before serving fails."
    )
    stop_timeout = Float(
        5.0, config=True, help="Seconds a stopped service gets to finish its requests."
    )
    poll_interval = Float(
        1.0,
        config=True,
        help="Seconds between checks for saved notebooks to reload (0 disables the check).",
    )

    manager: AppManager | None = None

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        contents = self.serverapp.contents_manager
        self.manager = AppManager(
            self.serverapp.root_dir,
            self.serverapp.base_url,
            allow_hidden=bool(getattr(contents, "allow_hidden", False)),
            startup_timeout=self.startup_timeout,
            stop_timeout=self.stop_timeout,
            poll_interval=self.poll_interval,
            log=self.log,
        )
        # If the server dies without its shutdown hooks, still signal the children.
        atexit.register(self.manager.kill_all)

    def initialize_handlers(self) -> None:
        assert self.manager is not None
        self.handlers.extend(handlers(self.manager))

    def current_activity(self):
        # A served notebook is activity: do not let an idle culler stop the server.
        if self.manager is not None and self.manager.apps:
            return [app.path for app in self.manager.apps.values()]
        return None

    async def stop_extension(self) -> None:
        if self.manager is not None:
            await self.manager.stop_all()
