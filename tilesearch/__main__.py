from tilesearch.cli import main

main()
