package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// ImageStore keeps the desk's uploaded images: every Store does (in the
// database: bytea / BLOB), and DirImages keeps them in a directory.
type ImageStore interface {
	// SaveImage stores an image; its ID must be new.
	SaveImage(ctx context.Context, img Image) error
	// Image returns an image (ErrNotFound if none); with thumb, Data is the
	// thumbnail and ContentType its type.
	Image(ctx context.Context, id string, thumb bool) (Image, error)
}

// DirImages is an ImageStore in a directory: <id> holds the image,
// <id>.thumb its thumbnail and <id>.json the rest. Files are written under
// temporary names and renamed, so a reader never sees half an image.
type DirImages struct {
	dir string
}

var _ ImageStore = (*DirImages)(nil)

// NewDirImages returns a DirImages in dir, created if needed.
func NewDirImages(dir string) (*DirImages, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: image directory: %w", err)
	}
	return &DirImages{dir: dir}, nil
}

// imageMeta is the <id>.json of a DirImages image.
type imageMeta struct {
	Owner       string    `json:"owner"`
	ContentType string    `json:"content_type"`
	ThumbType   string    `json:"thumb_type"`
	Width       int       `json:"width"`
	Height      int       `json:"height"`
	CreatedAt   time.Time `json:"created_at"`
}

// SaveImage implements ImageStore. The metadata file is written last: an
// image exists once it is there.
func (d *DirImages) SaveImage(_ context.Context, img Image) error {
	if err := checkImage(img); err != nil {
		return fmt.Errorf("save image: %w", err)
	}
	if img.CreatedAt.IsZero() {
		img.CreatedAt = time.Now()
	}
	base := filepath.Join(d.dir, img.ID)
	if _, err := os.Stat(base + ".json"); err == nil {
		return fmt.Errorf("save image %s: already exists", img.ID)
	}
	meta, err := json.Marshal(imageMeta{Owner: img.Owner, ContentType: img.ContentType, ThumbType: img.ThumbType,
		Width: img.Width, Height: img.Height, CreatedAt: img.CreatedAt.UTC()})
	if err != nil {
		return fmt.Errorf("save image %s: %w", img.ID, err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{base, img.Data}, {base + ".thumb", img.Thumb}, {base + ".json", meta}} {
		if err := writeFileAtomic(f.path, f.data); err != nil {
			return fmt.Errorf("save image %s: %w", img.ID, err)
		}
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file and a
// rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Image implements ImageStore.
func (d *DirImages) Image(_ context.Context, id string, thumb bool) (Image, error) {
	if checkImageID(id) != nil {
		return Image{}, fmt.Errorf("load image %q: %w", id, ErrNotFound)
	}
	base := filepath.Join(d.dir, id)
	raw, err := os.ReadFile(base + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, fmt.Errorf("load image %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Image{}, fmt.Errorf("load image %s: %w", id, err)
	}
	var m imageMeta
	if err := json.Unmarshal(raw, &m); err != nil {
		return Image{}, fmt.Errorf("load image %s: %w", id, err)
	}
	img := Image{ID: id, Owner: m.Owner, ContentType: m.ContentType, ThumbType: m.ThumbType, Width: m.Width, Height: m.Height, CreatedAt: m.CreatedAt}
	path := base
	if thumb {
		path += ".thumb"
		img.ContentType = m.ThumbType
	}
	if img.Data, err = os.ReadFile(path); err != nil {
		return Image{}, fmt.Errorf("load image %s: %w", id, err)
	}
	if thumb {
		img.Thumb = img.Data
	}
	return img, nil
}
