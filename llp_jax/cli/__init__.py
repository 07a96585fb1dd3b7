"""The command-line launchers (thin absl mains over the library), installed as console scripts
(`llp-train`, `llp-evaluate`, `llp-sample`, ...) and run from a checkout as
`python -m experiments.<name>`. All start through `common.run`."""
