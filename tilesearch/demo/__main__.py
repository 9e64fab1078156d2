from tilesearch.demo._train import main

main()
