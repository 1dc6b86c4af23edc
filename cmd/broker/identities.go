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

// defaultIdentity is the name of the identity from the environment.
const defaultIdentity = "default"

// identitySpec is one identity the configuration names: the one from the
// environment (AZURE_CLIENT_ID, …) or one of BROKER_CONFIG's.
type identitySpec struct {
	name                 string
	tenantID, clientID   string
	objectID, resourceID string

	secret, secretFile      string
	certPath                string
	certPassword            string // from the environment
	certPasswordFile        string // from the file
	sendChain               bool
	federatedFile           string
	secretExpiresOn         time.Time
	allowed, prefetch       []string
	allowedKey, prefetchKey string // the settings' names, for messages
}

// identitySpecs lists the identities of cfg: the environment's first, when
// it is set, then the file's in order. The first one is the default identity
// (used when a request names none).
func identitySpecs(cfg config.Config) []identitySpec {
	var out []identitySpec
	if cfg.ClientID != "" || len(cfg.Identities) == 0 {
		out = append(out, identitySpec{
			name:     defaultIdentity,
			tenantID: cfg.TenantID, clientID: cfg.ClientID,
			secret: cfg.ClientSecret, secretFile: cfg.ClientSecretFile,
			certPath: cfg.ClientCertificatePath, certPassword: cfg.ClientCertificatePassword,
			sendChain: cfg.SendCertificateChain, federatedFile: cfg.FederatedTokenFile,
			secretExpiresOn: cfg.ClientSecretExpiresOn,
			allowed:         cfg.AllowedScopes, prefetch: cfg.PrefetchScopes,
			allowedKey: "BROKER_ALLOWED_SCOPES", prefetchKey: "BROKER_PREFETCH_SCOPES",
		})
	}
	for _, id := range cfg.Identities {
		out = append(out, identitySpec{
			name:     id.Name,
			tenantID: id.TenantID, clientID: id.ClientID,
			objectID: id.ObjectID, resourceID: id.ResourceID,
			secretFile: id.ClientSecretFile,
			certPath:   id.ClientCertificatePath, certPasswordFile: id.ClientCertificatePasswordFile,
			sendChain: id.SendCertificateChain, federatedFile: id.FederatedTokenFile,
			secretExpiresOn: id.SecretExpiresOn,
			allowed:         id.AllowedScopes, prefetch: id.PrefetchScopes,
			allowedKey:  id.Source + ": identity " + id.Name + ": allowed_scopes",
			prefetchKey: id.Source + ": identity " + id.Name + ": prefetch_scopes",
		})
	}
	return out
}

// maxPasswordFile bounds a certificate password file.
const maxPasswordFile = 64 << 10

// credential builds the identity's credential. A certificate file is read
// now, so that a broken one fails at start; now may be nil (time.Now).
func (s identitySpec) credential(now func() time.Time, log *zap.Logger) (azure.Credential, error) {
	switch {
	case s.certPath != "":
		password := s.certPassword
		if s.certPasswordFile != "" {
			b, err := readSmallFile(s.certPasswordFile, maxPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("identity %s: client_certificate_password_file: %w", s.name, err)
			}
			password = strings.TrimRight(string(b), "\r\n")
		}
		c, err := azure.CertificateCredential(s.certPath, azure.CertificateOptions{
			Password:             password,
			SendCertificateChain: s.sendChain,
			Now:                  now,
			Logger:               log,
		})
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", s.name, err)
		}
		return c, nil
	case s.federatedFile != "":
		return azure.FederatedTokenFileCredential(s.federatedFile, azure.FederatedTokenOptions{Now: now, Logger: log}), nil
	case s.secretFile != "":
		return azure.SecretFileCredential(s.secretFile, now), nil
	default:
		return azure.SecretCredential(s.secret), nil
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

// client builds the identity's Entra ID client in cloud.
func (s identitySpec) client(cfg config.Config, cloud azure.Cloud, log *zap.Logger) (*azure.Client, azure.Credential, error) {
	cred, err := s.credential(nil, log.Named("credential"))
	if err != nil {
		return nil, nil, err
	}
	c, err := azure.New(azure.Config{
		Cloud:         cloud,
		AuthorityHost: cfg.AuthorityHost,
		TenantID:      s.tenantID,
		ClientID:      s.clientID,
		Credential:    cred,
		Logger:        log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("identity %s: %w", s.name, err)
	}
	return c, cred, nil
}

// pickIdentity returns the identity of cfg called name, by its name or
// client ID (case-insensitive); the default one when name is empty.
func pickIdentity(cfg config.Config, name string) (identitySpec, error) {
	specs := identitySpecs(cfg)
	if name == "" {
		return specs[0], nil
	}
	var names []string
	for _, s := range specs {
		if strings.EqualFold(s.name, name) || strings.EqualFold(s.clientID, name) {
			return s, nil
		}
		names = append(names, s.name)
	}
	return identitySpec{}, usageError{fmt.Sprintf("no identity is called %q: use one of %s", name, strings.Join(names, ", "))}
}
