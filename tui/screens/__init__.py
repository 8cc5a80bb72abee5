"""The console's screens: the main tabs, a server's detail, and the modal dialogs."""
