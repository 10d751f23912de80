module github.com/bombwatch/bombwatch

go 1.26.8
