module github.com/entrabroker/broker

go 1.26
