// The facerecon page: upload, follow the job, then show each face's GLB in a three.js viewer, with
// sliders for its ARKit-named morph targets; a GLB dropped on the page (e.g. head.glb from
// `facerecon video`) is shown as it is and its animation played.
// #viewer's data-state (empty, loading, ready, error) tells tests when a model is on screen.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 400;
const BACKGROUND = 0x20242a;  // the same as #viewer's CSS background
// Slider groups, by the ARKit name's prefix.
const GROUPS = [['brows', /^brow/], ['eyes', /^eye/], ['jaw', /^jaw/], ['mouth', /^mouth/], ['cheeks and nose', /^(cheek|nose)/]];

class Viewer {
  constructor(element) {
    this.element = element;
    // preserveDrawingBuffer keeps the last frame readable for screenshots.
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
    this.renderer.setClearColor(BACKGROUND);
    element.appendChild(this.renderer.domElement);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(30, 4 / 3, 0.01, 100);  // glTF is in metres
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x404048, 1.6));
    const key = new THREE.DirectionalLight(0xffffff, 2.0);
    key.position.set(30, 40, 60);
    this.scene.add(key);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.enableDamping = true;
    this.controls.autoRotateSpeed = 4;
    this.controls.autoRotate = $('turntable').checked;
    this.cache = new Map();   // face index -> {model, landmarks, head, mixer, action}
    this.current = null;
    this.clock = new THREE.Clock();
    this.mode = 'texture';
    this.materials = {
      shaded: new THREE.MeshStandardMaterial({ color: 0xd6bfae, roughness: 0.7, metalness: 0 }),
      wireframe: new THREE.MeshBasicMaterial({ color: 0x9fd3ff, wireframe: true }),
    };
    new ResizeObserver(() => this.resize()).observe(element);
    this.renderer.setAnimationLoop(() => {
      const dt = this.clock.getDelta();
      // A paused clip is not updated, so that slider edits are not overwritten.
      if (this.current?.action && !this.current.action.paused) {
        this.current.mixer.update(dt);
        showClipTime(this.current.action);
      }
      this.controls.update();
      this.renderer.render(this.scene, this.camera);
    });
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.element;
    if (!w || !h) return;
    this.renderer.setSize(w, h);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
  }

  async show(face) {
    this.element.dataset.state = 'loading';
    if (!this.cache.has(face.index)) this.cache.set(face.index, await this.load(face));
    if (this.current) this.scene.remove(this.current.model);
    this.current = this.cache.get(face.index);
    this.scene.add(this.current.model);
    this.setMode(this.mode);
    buildSliders(this.current.head);
    showPlayback(this.current.action);
    this.frame();
    // One rendered frame later the head is on the canvas.
    requestAnimationFrame(() => requestAnimationFrame(() => {
      this.element.dataset.state = 'ready';
      this.element.dataset.face = String(face.index);
    }));
  }

  // face.files.glb: a URL; face.files.json (optional): the face's JSON, for its landmarks.
  async load(face) {
    const [gltf, data] = await Promise.all([
      new GLTFLoader().loadAsync(face.files.glb),
      face.files.json ? fetch(face.files.json).then((r) => { if (!r.ok) throw new Error(`JSON: HTTP ${r.status}`); return r.json(); }) : null,
    ]);
    const model = gltf.scene;
    model.traverse((node) => {
      if (!node.isMesh) return;
      // Texture mode shows the photo's colours unlit, as baked; the GLB's own PBR material is kept for reference.
      node.userData.textured = new THREE.MeshBasicMaterial({ map: node.material.map });
    });
    // The head node carries the pose; the landmarks (model frame) hang under it and follow it.
    const head = model.getObjectByName('head') ?? model;
    let landmarks = new THREE.Group();
    if (data) {
      // The JSON's 68 landmarks are in model cm; the GLB is in metres. Drawn on top, visible from any side.
      const points = data.landmarks.ibug68.model_cm;
      landmarks = new THREE.InstancedMesh(
        new THREE.SphereGeometry(0.002, 10, 8),
        new THREE.MeshBasicMaterial({ color: 0xff2020, depthTest: false }), points.length);
      const m = new THREE.Matrix4();
      points.forEach(([x, y, z], i) => landmarks.setMatrixAt(i, m.makeTranslation(x / 100, y / 100, z / 100)));
      landmarks.renderOrder = 1;
    }
    landmarks.visible = $('landmarks').checked;
    head.add(landmarks);
    let mixer = null;
    let action = null;
    if (gltf.animations.length) {
      mixer = new THREE.AnimationMixer(model);
      action = mixer.clipAction(gltf.animations[0]).play();
    }
    return { model, landmarks, head: head.morphTargetInfluences ? head : null, mixer, action };
  }

  setMode(mode) {
    this.mode = mode;
    if (!this.current) return;
    this.current.model.traverse((node) => {
      if (node.userData.textured) node.material = mode === 'texture' ? node.userData.textured : this.materials[mode];
    });
  }

  setLandmarks(visible) {
    for (const { landmarks } of this.cache.values()) landmarks.visible = visible;
  }

  frame() {
    const box = new THREE.Box3().setFromObject(this.current.model);
    const center = box.getCenter(new THREE.Vector3());
    const size = box.getSize(new THREE.Vector3());
    const distance = 0.6 * Math.max(size.x, size.y) / Math.tan(THREE.MathUtils.degToRad(this.camera.fov / 2));
    this.controls.target.copy(center);
    this.camera.position.set(center.x, center.y, center.z + distance);
    this.camera.lookAt(center);
    this.controls.update();
  }

  clear() {
    if (this.current) this.scene.remove(this.current.model);
    this.current = null;
    this.cache.clear();
    this.element.dataset.state = 'empty';
    buildSliders(null);
    showPlayback(null);
  }
}

// One slider per morph target, grouped; each starts at (and can return to) the GLB's fitted weight.
function buildSliders(head) {
  const panel = $('expressions');
  panel.hidden = !head;
  const groups = $('expression-groups');
  groups.replaceChildren();
  if (!head) return;
  const fitted = [...head.morphTargetInfluences];
  head.userData.fitted ??= fitted;
  for (const [title, pattern] of GROUPS) {
    const names = Object.keys(head.morphTargetDictionary).filter((name) => pattern.test(name));
    if (!names.length) continue;
    const fieldset = document.createElement('fieldset');
    fieldset.append(Object.assign(document.createElement('legend'), { textContent: title }));
    for (const name of names) {
      const k = head.morphTargetDictionary[name];
      const input = Object.assign(document.createElement('input'), { type: 'range', min: 0, max: 1, step: 0.01 });
      input.value = String(head.morphTargetInfluences[k]);
      input.dataset.target = name;
      const value = Object.assign(document.createElement('output'), { textContent: (+input.value).toFixed(2) });
      input.addEventListener('input', () => {
        head.morphTargetInfluences[k] = +input.value;
        value.textContent = (+input.value).toFixed(2);
      });
      const label = document.createElement('label');
      label.title = `fitted: ${head.userData.fitted[k].toFixed(3)}`;
      label.append(Object.assign(document.createElement('span'), { textContent: name }), input, value);
      fieldset.append(label);
    }
    groups.append(fieldset);
  }
}

function setWeights(weights) {
  const head = viewer?.current?.head;
  if (!head) return;
  weights(head).forEach((w, k) => { head.morphTargetInfluences[k] = w; });
  buildSliders(head);
}

function showPlayback(action) {
  $('playback').hidden = !action;
  $('viewer').dataset.animated = action ? 'yes' : 'no';
  if (action) { $('play').textContent = action.paused ? 'play' : 'pause'; showClipTime(action); }
}

function showClipTime(action) {
  $('clip-time').textContent = `${action.time.toFixed(2)} / ${action.getClip().duration.toFixed(2)} s`;
}

let viewer = null;

function setError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

function setProgress(text, fraction) {
  $('progress').hidden = text === null;
  $('stage').textContent = text ?? '';
  if (fraction === null) $('bar').removeAttribute('value'); else $('bar').value = fraction;
}

// XMLHttpRequest rather than fetch: only it reports upload progress.
function upload(files, url = '/api/reconstructions', field = 'photos') {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append(field, file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) setProgress('uploading', e.loaded / e.total); };
    xhr.onload = () => xhr.status === 202 ? resolve(xhr.response)
      : reject(new Error(xhr.response?.detail ?? `upload failed (HTTP ${xhr.status})`));
    xhr.onerror = () => reject(new Error('upload failed: the server cannot be reached'));
    xhr.send(form);
  });
}

async function follow(job) {
  for (;;) {
    if (job.status === 'done') return job;
    if (job.status === 'error') throw new Error(job.error.message);
    const where = job.status === 'queued' ? `queued (${job.queue_position} ahead)` : job.stage;
    setProgress(`${where} \u2014 ${job.elapsed_s.toFixed(1)} s`, null);
    await new Promise((r) => setTimeout(r, POLL_MS));
    const response = await fetch(job.links.self);
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail ?? `HTTP ${response.status}`);
    job = body;
  }
}

function showFace(face) {
  for (const button of $('tabs').children) button.classList.toggle('active', button.dataset.index === String(face.index));
  $('dl-obj').href = face.files.obj;
  $('dl-glb').href = face.files.glb;
  $('dl-json').href = face.files.json;
  viewer.show(face).catch((e) => { $('viewer').dataset.state = 'error'; setError(`viewer: ${e.message}`); });
}

// One GLB without the photo, overlay or face tabs; ``downloads``: the download buttons' links by id
// (those left out are cleared).
function showGlb(glb, downloads = {}) {
  $('images').hidden = true;
  $('result').hidden = false;
  viewer ??= new Viewer($('viewer'));
  viewer.resize();
  $('tabs').replaceChildren();
  for (const id of ['dl-obj', 'dl-glb', 'dl-json']) {
    if (downloads[id]) $(id).href = downloads[id]; else $(id).removeAttribute('href');
  }
  viewer.show({ index: 0, files: { glb } })
    .catch((e) => { $('viewer').dataset.state = 'error'; setError(`viewer: ${e.message}`); });
}

// A video job: its animated head.
function showAnimation(job) {
  showGlb(job.links.animation, { 'dl-glb': job.links.animation, 'dl-json': job.links.frames });
}

// A scan job: the scanned mesh, or for a person the ICT head fitted to it (its downloads the scan's).
function showScan(job) {
  const glb = job.links.animation ?? job.links.scan_glb;
  showGlb(glb, { 'dl-obj': job.links.scan_obj, 'dl-glb': glb, 'dl-json': job.links.scan_json });
}

function showResult(job) {
  if (job.links.scan_glb) { showScan(job); return; }
  if (job.links.animation) { showAnimation(job); return; }
  $('images').hidden = false;
  $('photo').src = job.links.photo;
  $('overlay').src = job.links.overlay;
  $('result').hidden = false;
  viewer ??= new Viewer($('viewer'));
  viewer.resize();
  $('tabs').replaceChildren(...job.faces.map((face) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.index = String(face.index);
    button.textContent = `face ${face.index + 1} (yaw ${face.pose_deg.yaw}\u00b0)`;
    button.onclick = () => showFace(face);
    return button;
  }));
  showFace(job.faces[0]);
}

// A GLB dropped or chosen on the page is shown here, without the server.
function showLocalGlb(file) {
  viewer?.clear();
  showGlb(URL.createObjectURL(file));
}

async function start(files) {
  if (!files.length) return;
  if (files.length === 1 && /\.glb$/i.test(files[0].name)) {
    setError('');
    showLocalGlb(files[0]);
    return;
  }
  setError('');
  $('notes').replaceChildren();
  $('result').hidden = true;
  viewer?.clear();
  const video = files.length === 1 && /^video\//.test(files[0].type);
  try {
    setProgress('uploading', 0);
    const posted = $('scan').checked ? upload(files, '/api/scans', 'files')
      : video ? upload(files, '/api/videos', 'video') : upload(files);
    const job = await follow(await posted);
    setProgress(null, null);
    $('notes').replaceChildren(...job.notes.map((note) => Object.assign(document.createElement('li'), { textContent: note })));
    showResult(job);
  } catch (e) {
    setProgress(null, null);
    setError(e.message);
  }
}

const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); start([...e.dataTransfer.files]); });
$('file').addEventListener('change', (e) => start([...e.target.files]));
for (const radio of document.querySelectorAll('input[name=mode]')) {
  radio.addEventListener('change', () => viewer?.setMode(radio.value));
}
$('landmarks').addEventListener('change', (e) => viewer?.setLandmarks(e.target.checked));
$('turntable').addEventListener('change', (e) => { if (viewer) viewer.controls.autoRotate = e.target.checked; });
$('reset').addEventListener('click', () => { if (viewer?.current) viewer.frame(); });
$('fitted').addEventListener('click', () => setWeights((head) => head.userData.fitted));
$('neutral').addEventListener('click', () => setWeights((head) => head.morphTargetInfluences.map(() => 0)));
$('play').addEventListener('click', () => {
  const action = viewer?.current?.action;
  if (!action) return;
  action.paused = !action.paused;
  if (!action.paused) viewer.clock.getDelta();  // no jump over the paused time
  else buildSliders(viewer.current.head);      // the sliders show the paused frame's weights
  showPlayback(action);
});
