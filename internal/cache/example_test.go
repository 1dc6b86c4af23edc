package cache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/cache"
)

// staticSource stands in for the Entra token source.
type staticSource struct{}

func (staticSource) Token(_ context.Context, key cache.Key) (azure.Token, error) {
	now := time.Now()
	return azure.Token{AccessToken: "eyJ…", IssuedAt: now, ExpiresOn: now.Add(time.Hour)}, nil
}

func ExampleCache_Get() {
	c, err := cache.New(staticSource{}, cache.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	key := cache.Key{
		Authority: "https://login.microsoftonline.com",
		Tenant:    "contoso.onmicrosoft.com",
		ClientID:  "00000000-0000-0000-0000-000000000001",
		Scope:     "https://api.loganalytics.io/.default",
	}
	res, err := c.Get(context.Background(), key) // fetched once, then served from memory
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stale:", res.Stale, "servable:", c.Status(key).Servable)
	// Output: stale: false servable: true
}
