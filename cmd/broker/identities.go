package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/entrabroker/broker/internal/azure"
	"github.com/entrabroker/broker/internal/config"
)

// scopeSettings name where id's allowed and prefetch scopes are
// configured, for messages.
func scopeSettings(id config.Identity) (allowed, prefetch string) {
	if id.Source == "" {
		return "BROKER_ALLOWED_SCOPES", "BROKER_PREFETCH_SCOPES"
	}
	p := id.Source + ": identity " + id.Name + ": "
	return p + "allowed_scopes", p + "prefetch_scopes"
}

// maxPasswordFile bounds a certificate password file.
const maxPasswordFile = 64 << 10

// credential builds the identity's credential. A certificate file is read
// now, so that a broken one fails at start; now may be nil (time.Now).
func credential(id config.Identity, now func() time.Time, log *zap.Logger) (azure.Credential, error) {
	switch {
	case id.ClientCertificatePath != "":
		password := id.ClientCertificatePassword
		if id.ClientCertificatePasswordFile != "" {
			b, err := readSmallFile(id.ClientCertificatePasswordFile, maxPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("identity %s: client_certificate_password_file: %w", id.Name, err)
			}
			password = strings.TrimRight(string(b), "\r\n")
		}
		c, err := azure.CertificateCredential(id.ClientCertificatePath, azure.CertificateOptions{
			Password:             password,
			SendCertificateChain: id.SendCertificateChain,
			Now:                  now,
			Logger:               log,
		})
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", id.Name, err)
		}
		return c, nil
	case id.FederatedTokenFile != "":
		return azure.FederatedTokenFileCredential(id.FederatedTokenFile, azure.FederatedTokenOptions{Now: now, Logger: log}), nil
	case id.ClientSecretFile != "":
		return azure.SecretFileCredential(id.ClientSecretFile, now), nil
	default:
		return azure.SecretCredential(id.ClientSecret), nil
	}
}

// readSmallFile reads a file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: is it the right file?", path, limit)
	}
	return b, nil
}

// newClient builds the identity's Entra ID client in cloud.
func newClient(id config.Identity, cfg config.Config, cloud azure.Cloud, log *zap.Logger) (*azure.Client, azure.Credential, error) {
	cred, err := credential(id, nil, log.Named("credential"))
	if err != nil {
		return nil, nil, err
	}
	c, err := azure.New(azure.Config{
		Cloud:         cloud,
		AuthorityHost: cfg.AuthorityHost,
		TenantID:      id.TenantID,
		ClientID:      id.ClientID,
		Credential:    cred,
		Logger:        log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("identity %s: %w", id.Name, err)
	}
	return c, cred, nil
}

// pickIdentity returns the identity of cfg called name, by its name or
// client ID (case-insensitive); the default one when name is empty.
func pickIdentity(cfg config.Config, name string) (config.Identity, error) {
	ids := cfg.Served()
	if name == "" {
		return ids[0], nil
	}
	var names []string
	for _, id := range ids {
		if strings.EqualFold(id.Name, name) || strings.EqualFold(id.ClientID, name) {
			return id, nil
		}
		names = append(names, id.Name)
	}
	return config.Identity{}, usageError{fmt.Sprintf("no identity is called %q: use one of %s", name, strings.Join(names, ", "))}
}
