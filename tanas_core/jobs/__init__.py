"""Background jobs: the runner (threads, state in SQLite, ``runner``), the job kinds (request type + work function,
``kinds``) and what a launch will cost on this machine (``estimates``)."""
