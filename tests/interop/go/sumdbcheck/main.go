// sumdbcheck: checks insitu's audit artefacts with Go's golang.org/x/mod/sumdb/note and
// sumdb/tlog (an independent implementation), and signs a note of its own for insitu to check.
//
// Input (JSON on stdin) and output (JSON on stdout) are described in tests/interop/README.md.
// cosignature/v1 is not in x/mod: cosigV1 below implements note.Verifier / note.Signer from the
// C2SP tlog-cosignature text (key type 0x04, u64 big-endian timestamp, "cosignature/v1\ntime T\n").
package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type cosigV1 struct {
	name string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
	time uint64
}

func (c cosigV1) Name() string { return c.name }

func (c cosigV1) KeyHash() uint32 {
	h := sha256.Sum256(append([]byte(c.name+"\n\x04"), c.pub...))
	return binary.BigEndian.Uint32(h[:4])
}

func (c cosigV1) message(t uint64, msg []byte) []byte {
	return []byte(fmt.Sprintf("cosignature/v1\ntime %d\n%s", t, msg))
}

func (c cosigV1) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	return ed25519.Verify(c.pub, c.message(t, msg), sig[8:])
}

func (c cosigV1) Sign(msg []byte) ([]byte, error) {
	sig := binary.BigEndian.AppendUint64(nil, c.time)
	return append(sig, ed25519.Sign(c.priv, c.message(c.time, msg))...), nil
}

func (c cosigV1) Verifier() note.Verifier { return c }

type proofCase struct {
	Index int64    `json:"index"`
	First int64    `json:"first"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

type input struct {
	LogVkey       string      `json:"log_vkey"`
	WitnessVkeys  []string    `json:"witness_vkeys"`
	LegacyVkeys   []string    `json:"legacy_witness_vkeys"`
	Leaves        []string    `json:"leaves"`
	Notes         []string    `json:"notes"`
	Inclusion     []proofCase `json:"inclusion"`
	Consistency   []proofCase `json:"consistency"`
	GoLogSkey     string      `json:"go_log_skey"`
	GoWitnessName string      `json:"go_witness_name"`
	GoWitnessSeed string      `json:"go_witness_seed"`
	GoTime        uint64      `json:"go_time"`
	GoSize        int64       `json:"go_size"`
	GoOrigin      string      `json:"go_origin"`
}

type noteResult struct {
	Text        string `json:"text"`
	LogSigs     int    `json:"log_sigs"`
	WitnessSigs int    `json:"witness_sigs"`
	LegacySigs  int    `json:"legacy_sigs"`
	Unverified  int    `json:"unverified"`
	Error       string `json:"error"`
}

type proofResult struct {
	OK      bool     `json:"ok"`
	Error   string   `json:"error"`
	GoProof []string `json:"go_proof"`
}

type output struct {
	LeafHashes  []string          `json:"leaf_hashes"`
	Roots       map[string]string `json:"roots"`
	Notes       []noteResult      `json:"notes"`
	Inclusion   []proofResult     `json:"inclusion"`
	Consistency []proofResult     `json:"consistency"`
	GoNote      string            `json:"go_note"`
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func vkeyV1(vkey string) cosigV1 {
	parts := strings.SplitN(vkey, "+", 3)
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	must(err)
	if len(raw) != 33 || raw[0] != 4 {
		must(fmt.Errorf("not a cosignature/v1 vkey"))
	}
	c := cosigV1{name: parts[0], pub: ed25519.PublicKey(raw[1:])}
	if fmt.Sprintf("%08x", c.KeyHash()) != parts[1] {
		must(fmt.Errorf("cosignature/v1 vkey hash mismatch"))
	}
	return c
}

func hashes(b64 []string) []tlog.Hash {
	out := make([]tlog.Hash, len(b64))
	for i, s := range b64 {
		raw, err := base64.StdEncoding.DecodeString(s)
		must(err)
		copy(out[i][:], raw)
	}
	return out
}

func encode(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

func main() {
	var in input
	must(json.NewDecoder(os.Stdin).Decode(&in))

	// The tree, rebuilt by tlog from the leaf bodies.
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var out output
	out.Roots = map[string]string{}
	for i, b := range in.Leaves {
		body, err := base64.StdEncoding.DecodeString(b)
		must(err)
		h, err := tlog.StoredHashes(int64(i), body, reader)
		must(err)
		stored = append(stored, h...)
		leaf := tlog.RecordHash(body)
		out.LeafHashes = append(out.LeafHashes, base64.StdEncoding.EncodeToString(leaf[:]))
	}
	root := func(n int64) tlog.Hash {
		h, err := tlog.TreeHash(n, reader)
		must(err)
		return h
	}

	logKey, err := note.NewVerifier(in.LogVkey)
	must(err)
	verifiers := []note.Verifier{logKey}
	names := map[string]string{fmt.Sprintf("%s+%08x", logKey.Name(), logKey.KeyHash()): "log"}
	for _, v := range in.WitnessVkeys {
		c := vkeyV1(v)
		verifiers = append(verifiers, c)
		names[fmt.Sprintf("%s+%08x", c.Name(), c.KeyHash())] = "witness"
	}
	for _, v := range in.LegacyVkeys {
		l, err := note.NewVerifier(v)
		must(err)
		verifiers = append(verifiers, l)
		names[fmt.Sprintf("%s+%08x", l.Name(), l.KeyHash())] = "legacy"
	}
	for _, text := range in.Notes {
		var r noteResult
		n, err := note.Open([]byte(text), note.VerifierList(verifiers...))
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Text = n.Text
			r.Unverified = len(n.UnverifiedSigs)
			for _, s := range n.Sigs {
				switch names[fmt.Sprintf("%s+%08x", s.Name, s.Hash)] {
				case "log":
					r.LogSigs++
				case "witness":
					r.WitnessSigs++
				case "legacy":
					r.LegacySigs++
				}
			}
			lines := strings.Split(n.Text, "\n")
			if len(lines) >= 3 {
				var size int64
				fmt.Sscanf(lines[1], "%d", &size)
				if size <= int64(len(in.Leaves)) {
					h := root(size)
					out.Roots[lines[1]] = base64.StdEncoding.EncodeToString(h[:])
				}
			}
		}
		out.Notes = append(out.Notes, r)
	}

	for _, c := range in.Inclusion {
		var r proofResult
		leaf := tlog.RecordHash(mustDecode(in.Leaves[c.Index]))
		err := tlog.CheckRecord(tlog.RecordProof(hashes(c.Proof)), c.Size, root(c.Size), c.Index, leaf)
		r.OK, r.Error = err == nil, errString(err)
		p, err := tlog.ProveRecord(c.Size, c.Index, reader)
		must(err)
		r.GoProof = encode(p)
		out.Inclusion = append(out.Inclusion, r)
	}
	for _, c := range in.Consistency {
		var r proofResult
		err := tlog.CheckTree(tlog.TreeProof(hashes(c.Proof)), c.Size, root(c.Size), c.First, root(c.First))
		r.OK, r.Error = err == nil, errString(err)
		p, err := tlog.ProveTree(c.Size, c.First, reader)
		must(err)
		r.GoProof = encode(p)
		out.Consistency = append(out.Consistency, r)
	}

	// A note signed by Go: the log's key (x/mod's signer) and a cosignature/v1 witness.
	if in.GoLogSkey != "" {
		logSigner, err := note.NewSigner(in.GoLogSkey)
		must(err)
		seed := mustDecode(in.GoWitnessSeed)
		priv := ed25519.NewKeyFromSeed(seed)
		w := cosigV1{name: in.GoWitnessName, pub: priv.Public().(ed25519.PublicKey), priv: priv, time: in.GoTime}
		h := root(in.GoSize)
		text := fmt.Sprintf("%s\n%d\n%s\n", in.GoOrigin, in.GoSize, base64.StdEncoding.EncodeToString(h[:]))
		signed, err := note.Sign(&note.Note{Text: text}, logSigner, w)
		must(err)
		out.GoNote = string(signed)
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	must(enc.Encode(out))
}

func mustDecode(s string) []byte {
	raw, err := base64.StdEncoding.DecodeString(s)
	must(err)
	return raw
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
