"""The Qt-free dubbing session model: edits, undo/redo, events, mixing, persistence."""
from __future__ import annotations

import json

import numpy as np
import pytest

from speech2lip.app.model.editor import SAMPLE_RATE, EditorModel, pingpong
from speech2lip.app.model.events import EmitterGroup
from speech2lip.app.model.undo import UndoStack
from speech2lip.core.media import read_audio

FPS = 30.0


@pytest.fixture()
def model():
    m = EditorModel(FPS, n_source=600)
    m.add_source("a.wav", np.full(SAMPLE_RATE * 2, 0.25, np.float32))      # 2 s = 60 frames
    m.add_source("b.wav", np.full(SAMPLE_RATE, -0.5, np.float32))          # 1 s = 30 frames
    return m


def recorder(emitter):
    seen = []
    emitter.connect(lambda e: seen.append(e))
    return seen


def test_events_fire_and_block():
    g = EmitterGroup("a", "b")
    got, any_ = recorder(g.a), recorder(g.any)
    g.a(x=1)
    with g.a.blocked():
        g.a(x=2)
    g.b(y=3)
    assert [e.x for e in got] == [1]
    assert [(e.source, e.type) for e in any_] == [("a", "any"), ("b", "any")]


def test_add_move_trim_and_duration(model):
    assert model.duration == 600                       # empty: the source clip
    seen = recorder(model.events.clips)
    c = model.add_clip("a.wav", track=0, start=10)
    assert (c.start, c.length, c.src_len, c.end) == (10, 60, 60, 70)
    assert model.duration == 70                        # the dub follows the audio
    assert model.selection.clips == {c.id}
    model.move_clip(c.id, 100, track=1)
    assert (model.clip(c.id).start, model.clip(c.id).track) == (100, 1)
    model.trim_clip(c.id, "left", 110)                 # drops the first 10 frames of the file
    c2 = model.clip(c.id)
    assert (c2.start, c2.src_in, c2.length) == (110, 10, 50)
    model.trim_clip(c.id, "left", 0)                   # cannot reveal before the file's start
    assert (model.clip(c.id).start, model.clip(c.id).src_in) == (100, 0)
    model.trim_clip(c.id, "right", 1000)               # nor past its end
    assert model.clip(c.id).length == 60
    model.trim_clip(c.id, "right", 120)
    assert model.clip(c.id).end == 120 and model.duration == 120
    assert len(seen) == 5                               # the no-op trim past the end emits nothing


def test_undo_redo_restores_each_step(model):
    c = model.add_clip("a.wav", start=0)
    model.move_clip(c.id, 30)
    model.trim_clip(c.id, "right", 50)
    states = []
    for _ in range(3):
        states.append((model.clip(c.id) if c.id in {x.id for x in model.clips} else None, model.duration))
        assert model.undo.undo()
    assert model.clips == [] and model.duration == 600
    assert not model.undo.can_undo and model.undo.redo_text == "Add a.wav"
    for expect in reversed(states):
        assert model.undo.redo()
        assert (model.clip(c.id), model.duration) == expect
    assert not model.undo.can_redo
    model.undo.undo()
    model.move_clip(c.id, 5)                            # a new edit drops the redo branch
    assert not model.undo.can_redo and model.clip(c.id).start == 5


def test_remove_split_and_macro(model):
    a = model.add_clip("a.wav", start=0)
    right = model.split_clip(a.id, 20)
    assert [(x.start, x.src_in, x.length) for x in model.clips] == [(0, 0, 20), (20, 20, 40)]
    model.remove_clips([right])
    assert len(model.clips) == 1
    model.undo.undo()
    model.undo.undo()                                   # the split is one step
    assert [(x.start, x.length) for x in model.clips] == [(0, 60)]


def test_mix_places_trimmed_audio(model):
    a = model.add_clip("a.wav", track=0, start=30)
    b = model.add_clip("b.wav", track=1, start=60)
    model.trim_clip(a.id, "left", 45)                  # a now plays 45..90
    spf = SAMPLE_RATE / FPS
    wave = model.mix()
    assert len(wave) == round(model.duration * spf)
    assert np.all(wave[: int(45 * spf)] == 0)
    assert np.allclose(wave[int(50 * spf):int(59 * spf)], 0.25)
    assert np.allclose(wave[int(61 * spf):int(89 * spf)], -0.25)   # both tracks sum
    model.set_clip_gain(b.id, 0.0)
    assert np.allclose(model.mix(61, 89), 0.25)
    rev = model.mix_revision
    model.set_playhead(10)
    assert model.mix_revision == rev                    # the playhead is not a change to what is heard


def test_playhead_range_and_timecode(model):
    seen = recorder(model.events.playhead)
    model.set_playhead(10_000)
    assert model.playhead == 599
    model.step(-600)
    assert model.playhead == 0 and len(seen) == 2
    assert model.range() == (0, 600)
    model.set_in_point(100)
    model.set_out_point(199)
    assert model.range() == (100, 200)
    model.set_out_point(50)                             # out before in clears in
    assert model.in_point is None and model.range() == (0, 51)
    assert model.timecode(30 * 61 + 7) == "00:01:01:07"


def test_background_pingpongs_without_index_error():
    assert pingpong(np.arange(8), 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1]
    assert pingpong(np.arange(3), 1).tolist() == [0, 0, 0]
    m = EditorModel(FPS, n_source=5)
    assert m.background(range(100)).max() == 4


def test_keyframes_interpolate_move_delete_and_undo(model):
    model.set_keyframe(0, (0.0, 0.0, 0.0))
    model.set_keyframe(20, (10.0, -4.0, 2.0))
    mid = model.pose_at([10])[0]
    assert 0 < mid[0] < 10 and -4 < mid[1] < 0
    assert np.allclose(model.pose_at([20, 25])[:, 0], 10.0)   # held after the last key
    model.move_keyframe(20, 40)
    assert sorted(model.keyframes) == [0, 40]
    model.delete_keyframe(0)
    assert sorted(model.keyframes) == [40]
    model.undo.undo()
    model.undo.undo()
    assert model.keyframes == {0: (0.0, 0.0, 0.0), 20: (10.0, -4.0, 2.0)}
    model.set_keyframe(20, (99.0, 0.0, 0.0))            # clamped to the pose limit
    assert model.keyframes[20][0] == 20.0               # core.dub.pose.YAW_LIMIT


def test_pending_pose_previews_then_keys(model):
    model.set_playhead(12)
    model.set_pending_pose((5.0, 0.0, 0.0))
    assert model.preview_pose(12) == (5.0, 0.0, 0.0)
    assert model.preview_pose(13) == (0.0, 0.0, 0.0)
    model.set_keyframe()
    assert model.keyframes == {12: (5.0, 0.0, 0.0)} and model.pending_pose is None
    model.set_pending_pose((1.0, 1.0, 1.0))
    model.set_playhead(0)                               # moving away drops the unsaved slider pose
    assert model.pending_pose is None


def test_session_round_trip(model):
    a = model.add_clip("a.wav", track=1, start=3)
    model.trim_clip(a.id, "left", 8)
    model.set_keyframe(4, (1.0, 2.0, 3.0))
    model.set_in_point(2)
    obj = json.loads(json.dumps(model.to_json()))
    other = EditorModel(FPS, n_source=600)
    paths = other.load_json(obj)
    assert paths == ["a.wav"]
    other.add_source("a.wav", model.source("a.wav"))
    assert [(c.track, c.start, c.src_in, c.length) for c in other.clips] == [(1, 8, 5, 55)]
    assert other.keyframes == model.keyframes and other.in_point == 2
    assert not other.undo.can_undo
    assert np.array_equal(other.mix(), model.mix())


def test_undo_stack_merge_clean_and_limit():
    from speech2lip.app.model.undo import Command

    log = []

    class Add(Command):
        def __init__(self, n):
            self.n = n

        def redo(self):
            log.append(self.n)

        def undo(self):
            log.remove(self.n)

    s = UndoStack(limit=3)
    for i in range(5):
        s.push(Add(i))
    assert len(s) == 3 and log == [0, 1, 2, 3, 4]
    s.set_clean()
    s.undo()
    assert not s.is_clean
    s.redo()
    assert s.is_clean


def test_real_speech_clip_on_the_timeline():
    from pathlib import Path

    speech = Path(__file__).resolve().parents[1] / ".." / "shared" / "media" / "speech" / "librivox_austen_0920.wav"
    wave = read_audio(speech)
    m = EditorModel(FPS, n_source=600)
    m.add_source(str(speech), wave)
    c = m.add_clip(str(speech), start=15)
    assert c.length == int(np.ceil(len(wave) / SAMPLE_RATE * FPS))
    mixed = m.mix()
    lead = int(round(15 * SAMPLE_RATE / FPS))
    assert np.all(mixed[:lead] == 0)
    assert np.allclose(mixed[lead:lead + len(wave)], np.clip(wave, -1, 1))
