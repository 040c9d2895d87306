"""The AG Bank demo (SPEC §9): ``seed.py`` sets it up and runs Freddy beside the server;
``routes.py`` serves ``/demo``, a host page that embeds the widget like any customer site."""
