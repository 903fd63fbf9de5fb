#version 330 core
// Texture maps: the diffuse part of pyrender's own shading (mesh.frag with metallic 0:
// base colour x 0.96 / pi x light x n.l, plus base colour x ambient, then gamma 1/2.2), two-sided,
// without its specular term, which costs 4-5x more per fragment on CPU.
#define MAX_LIGHTS 8
const float PI = 3.141592653589793;
struct Material {
    vec4 base_color_factor;
#ifdef HAS_BASE_COLOR_TEX
    sampler2D base_color_texture;
#endif
};
struct DirectionalLight {
    vec3 color;
    float intensity;
    vec3 direction;
};
uniform Material material;
uniform DirectionalLight directional_lights[MAX_LIGHTS];
uniform int n_directional_lights;
uniform vec3 ambient_light;

in vec3 world_normal;
in vec2 uv_0;
in vec4 color_multiplier;
out vec4 frag_color;

vec3 srgb_to_linear(vec3 srgb)
{
    vec3 low = step(vec3(0.04045), srgb);
    return mix(srgb / vec3(12.92), pow((srgb + vec3(0.055)) / vec3(1.055), vec3(2.4)), low);
}

void main()
{
    vec3 base = material.base_color_factor.rgb * color_multiplier.rgb;
#ifdef HAS_BASE_COLOR_TEX
    base *= srgb_to_linear(texture(material.base_color_texture, uv_0).rgb);
#endif
    vec3 n = normalize(world_normal);
    if (!gl_FrontFacing) n = -n;
    vec3 color = base * ambient_light;
    for (int i = 0; i < n_directional_lights && i < MAX_LIGHTS; i++) {
        float nl = max(dot(n, -normalize(directional_lights[i].direction)), 0.0);
        color += base * 0.96 / PI * directional_lights[i].intensity * directional_lights[i].color * nl;
    }
    frag_color = vec4(pow(clamp(color, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
